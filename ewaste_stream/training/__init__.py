"""Training and evaluation library behind ``ewaste-stream train`` and ``evaluate``.

Modules: ``data`` (dataset scanning, image loading), ``leaks`` (sha256 + dHash duplicate
finder), ``metrics`` (classification metrics, ECE), ``calibration`` (temperature scaling),
``transforms`` (photo augmentations), ``belt`` (belt-crop training/eval data from the
simulator's compositing), ``config`` (the training recipe), ``checkpoint`` (resumable state),
``loop`` (the training loop), ``evaluation`` (photo + belt-crop evaluation), ``plots``.
Heavy imports (torch) live in the modules that need them, not here.
"""
