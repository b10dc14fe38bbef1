"""REST v1 + the web form (``create_app``); ``server.serve`` runs it under uvicorn."""
