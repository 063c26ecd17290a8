"""ONNX Runtime GenAI export (Olive + model builder) and its runtime checks; pure core, no Prefect/MLflow."""
