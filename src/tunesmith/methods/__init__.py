"""Methods are small strategies for the shared loop: each builds its model and its hooks."""
