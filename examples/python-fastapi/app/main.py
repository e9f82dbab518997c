"""HTTP endpoints of the example service."""

import os
import platform

from fastapi import FastAPI, HTTPException

app = FastAPI(title="kiln python-fastapi example", version="1.0.0")

ITEMS = {1: "kiln", 2: "brick", 3: "clay"}


@app.get("/health")
def health() -> dict:
    """Liveness probe used by the image's HEALTHCHECK."""
    return {"status": "ok"}


@app.get("/")
def root() -> dict:
    return {
        "service": app.title,
        "python": platform.python_version(),
        "user": os.getuid(),
    }


@app.get("/items/{item_id}")
def read_item(item_id: int) -> dict:
    if item_id not in ITEMS:
        raise HTTPException(status_code=404, detail="no such item")
    return {"id": item_id, "name": ITEMS[item_id]}
