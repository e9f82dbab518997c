"""A tiny FastAPI service: the application of kiln's python-fastapi example."""
