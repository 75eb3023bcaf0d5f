"""Personal data on the query API: disclosure export, third-party provision records (APPI), access audit."""
