"""Task package under construction in this session: registers nothing yet."""
