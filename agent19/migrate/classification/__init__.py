"""What each statement does: parse-tree classification against the knowledge table."""
