"""The HTTP claim service (`tradeguard serve`, extra `service`): the claim store over FastAPI.

`keys` (API keys, SQLAlchemy only) imports without FastAPI; the app, its routes and `auth` need
the `service` extra (`pip install "tradeguard[service]"`).
"""
