"""The HTTP claim service (`tradeguard serve`, extra `service`): the claim store over FastAPI.

`app.create_app(ServiceConfig)` builds the app; `server.serve` runs it on uvicorn. `keys` (API
keys) and `actions` (SafeAgent-compatible action claims) need SQLAlchemy only, so `tradeguard
keys` works without the extra; the app, its routes (`safeagent`, `native`), `auth` and `limits`
need it (`pip install "tradeguard[service]"`).
"""
