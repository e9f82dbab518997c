from fastapi.testclient import TestClient

from app.main import app

client = TestClient(app)


def test_health():
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_root_reports_python():
    body = client.get("/").json()
    assert body["python"].startswith("3.")


def test_item_found():
    assert client.get("/items/1").json() == {"id": 1, "name": "kiln"}


def test_item_missing():
    assert client.get("/items/99").status_code == 404
