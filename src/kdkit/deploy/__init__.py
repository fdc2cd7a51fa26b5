"""Using a trained model afterwards: ONNX export (tensor and raw-text models), the loaded model with what predicting
needs, new inputs read the way the run's data was, and what `kdkit predict` prints.
"""
