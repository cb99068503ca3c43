"""tandem serving: the online path (model server, gateway, request log)."""

import os

# TF Transform 1.16 needs Keras 2; set before TensorFlow is imported (see pipeline/__init__.py).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
