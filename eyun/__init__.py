"""The E云 boundary: API client, fake server, generated directory and traffic simulator."""
