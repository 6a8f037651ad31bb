"""Transfer-learned FER classifier with long-tail balancing strategies (issue 5)."""
