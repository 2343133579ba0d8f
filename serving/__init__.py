"""What a service worker runs: its settings, the request guard, the demo page, and the torch-free ONNX runtime with
the pair-model format it reads. Imports no pipeline (training) code: a lean Bento ships service.py, params.yaml and
this package only (tests/test_lean_worker.py checks it); the torch runtime adds pipeline.scoring, which runtime.py
imports by name only for it."""
