"""The gateway: decorate, validate, log, predict (model A), mirror (model B)."""
