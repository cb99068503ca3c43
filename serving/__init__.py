"""tandem serving: the online path (model server, gateway, request log)."""
