"""`natsmesh serve`: the mesh seen from outside the terminal, in one ASGI process (Starlette, run by uvicorn):
Prometheus metrics (`natsmesh.serve.metrics`) and the web app (`natsmesh.serve.app`)."""
