"""Analysis: reads only the results store."""
