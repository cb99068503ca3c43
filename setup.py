"""tandem: a TFX-native production ML pipeline."""

import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _lock() -> list[str]:
    # The exact, tested stack; `make` installs it with `pip install -r requirements.lock`.
    with open(os.path.join(HERE, "requirements.lock")) as f:
        pins = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    top_level = (
        "tfx", "tensorflow", "tensorflow-data-validation", "tensorflow-transform", "tfx-bsl",
        "ml-metadata", "tensorflow-serving-api", "apache-beam", "tf-keras", "kfp",
        "grpcio", "prometheus_client", "PyYAML", "psutil",
    )
    wanted = {name.lower().replace("_", "-") for name in top_level}
    return [p for p in pins if p.split("==")[0].split("[")[0].lower().replace("_", "-") in wanted]


# The repository's top-level folders, each installed as a subpackage of `tandem` (package_dir),
# so that `pip install .` adds one top-level name and cannot collide with a user's own
# `pipeline` or `schemas` package. The folders stay where they are; `tandem/` holds only the
# package's __init__.py. notebooks/ is data only (the walkthrough travels in the wheel).
SUBPACKAGES = ("pipeline", "components", "schemas", "serving", "reports")
PACKAGE_DIR = {"tandem": "tandem", **{f"tandem.{name}": name for name in SUBPACKAGES},
               "tandem.notebooks": "notebooks"}
PACKAGES = ["tandem", "tandem.notebooks"] + [
    f"tandem.{package}"
    for package in find_packages(include=[p for name in SUBPACKAGES for p in (name, f"{name}.*")])
]


setup(
    name="tandem",
    version="0.1.0",
    description="TFX-native production ML pipeline: from raw data to safe production and back.",
    python_requires=">=3.10,<3.11",
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={"tandem.pipeline": ["configs/*.yaml"], "tandem.schemas": ["*/*.pbtxt"],
                  "tandem.notebooks": ["*.ipynb"]},
    include_package_data=True,
    install_requires=_lock(),
    extras_require={"test": ["pytest==8.3.3", "pytest-timeout==2.4.0", "pytest-xdist==3.8.0", "ruff==0.6.9"]},
    entry_points={"console_scripts": ["tandem=tandem.pipeline.cli:main"]},
)
