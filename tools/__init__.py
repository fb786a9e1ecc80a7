"""Project tools run from the repository root (``./dev mutation``)."""
