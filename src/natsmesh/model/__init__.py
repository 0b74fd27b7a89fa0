"""Floor 0, the model: the spec document, its checks, and the mesh it resolves to, as plain typed data. Pure: no
socket, no process, no file written; pydantic is loaded only by `natsmesh.model.checks`."""
