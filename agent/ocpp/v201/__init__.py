"""OCPP 2.0.1 adapter (in progress): the device model."""
