"""CAN backends (python-can): the CHAdeMO vehicle link (IEEE 2030.1.1, REFERENCE 6.2)."""
