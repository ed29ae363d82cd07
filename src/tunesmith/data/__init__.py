"""Reading users' files and turning them into training examples."""
