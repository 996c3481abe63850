import os

URL = os.environ["MODEL_URL"]
THRESHOLD = float(os.getenv("THRESHOLD", "0.5"))


def predict(payload: dict) -> dict:
    return {"fraud": payload.get("score", 0) > THRESHOLD}
