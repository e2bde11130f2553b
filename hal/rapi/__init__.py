"""OpenEVSE RAPI backends: a safety MCU on a serial port serving the pilot,
contactor and meter roles (``hal.rapi.roles``), one ``RapiController`` per port."""
