"""Times as support quotes them to customers and reads them in logs: ISO-like, to the
minute, with the time zone named (`T`: "UTC", the zone of every page, TIME_ZONE)."""

DATETIME_FORMAT = r"Y-m-d H:i T"
SHORT_DATETIME_FORMAT = DATETIME_FORMAT
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = DATE_FORMAT
