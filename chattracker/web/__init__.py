"""`chattracker serve`: the browser UI (FastAPI app, per-session state, one static HTML page)."""
