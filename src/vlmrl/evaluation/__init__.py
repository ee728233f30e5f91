"""Playing episodes with an agent: the agents, the one episode loop, held-out evaluation, GIFs, speed of the games."""
