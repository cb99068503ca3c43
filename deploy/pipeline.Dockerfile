# The image Kubeflow runs every tandem component in: the TFX 1.16 base image plus tandem's
# code (preprocessing_fn, run_fn, the validation gate, the trainer executor, the schemas).
# Build from the repository root:
#   docker build -f deploy/pipeline.Dockerfile -t <registry>/tandem-pipeline:<tag> .
FROM tensorflow/tfx:1.16.0

WORKDIR /tandem
COPY requirements.lock setup.py README.md ./
COPY tandem ./tandem
COPY pipeline ./pipeline
COPY components ./components
COPY schemas ./schemas
COPY serving ./serving
COPY reports ./reports
COPY notebooks ./notebooks
# The base image already carries the pinned TFX stack; install tandem itself on top.
RUN pip install --no-cache-dir --no-deps . \
 && python -c "import tandem.components.transform, tandem.components.trainer, tandem.schemas"
ENV TF_USE_LEGACY_KERAS=1
