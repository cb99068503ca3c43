"""tandem: a TFX-native production ML pipeline, installed as one package.

The repository keeps its top-level folders (pipeline/, components/, schemas/, serving/,
reports/, notebooks/); setup.py maps each one into this package (`package_dir`), so an
install adds the single top-level name `tandem`: tandem.pipeline, tandem.components,
tandem.schemas, tandem.serving, tandem.reports, and the notebook as data in tandem/notebooks/.
In the repository this folder holds only this file.

It also sets, once for every tandem module, what must hold before TensorFlow is imported:
TF Transform 1.16 needs Keras 2 (`TF_USE_LEGACY_KERAS`). Python runs this file before any
`tandem.*` module, and Beam worker subprocesses inherit the variable.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
