"""Model analysis: Grad-CAM, embedding maps, uncertainty and reject thresholds, HTML reports.

Behind ``ewaste-stream analyse``. Heavy imports (torch, timm, cv2, matplotlib, sklearn) stay
inside the modules that need them; this package import is cheap.
"""
