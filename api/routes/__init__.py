"""One router per area; create_app includes them all."""
