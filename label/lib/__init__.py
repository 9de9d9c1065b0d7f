"""The app's parts: the datastore, inference and training tasks over swin_brats_bundle (see ../README.md)."""
