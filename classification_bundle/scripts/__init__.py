"""Hooks of the Swin UNETR 3D classification bundle."""
