"""Model families: students (the small networks that ship to the board) and teachers."""
