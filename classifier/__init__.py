"""Transfer-learned FER classifier with long-tail balancing strategies."""
