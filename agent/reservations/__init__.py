"""Reservations (OCPP 1.6 Reservation profile, 2.0.1 block H), version-neutral.

``book``: the pure reservation book (reserve, cancel, expire, match, admit).
``service``: keeps the book durable, fires expiries on time and tells the EVSE
controllers which connectors are held.
"""
