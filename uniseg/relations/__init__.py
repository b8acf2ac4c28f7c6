"""Class relations: mining the cosine activations and eq. 6 (`mining`: the relation tables), and the mined
relations scored against the synthetic truth (`scores`)."""
