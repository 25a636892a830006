"""Data sources: adapters that read a table (SQL, ODBC, files, Python functions), and the refresher
that reads each on its schedule, off the request path, keeping its last good result."""
