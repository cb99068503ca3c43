"""Shadow replay: model A and model B on the same logged traffic."""
