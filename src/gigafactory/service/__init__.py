"""The control plane: a FastAPI service over SQLAlchemy 2, with its scheduler loop.

Sub-packages are per domain (``auth``, ``tenants``, ``jobs``, ``usage``, ``audit``), each
split into ``models`` (tables), ``schemas`` (request/response bodies, pure Pydantic),
``service`` (the logic) and ``router`` (thin HTTP glue). This ``__init__`` stays empty so
that the client can import schemas without pulling in the server.
"""
