"""Lab 8's Flower app: FedAvg of a logistic regression, one SuperNode per hospital."""
