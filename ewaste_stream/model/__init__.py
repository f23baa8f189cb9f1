"""Classifier: model folders, timm factory, backends."""
