"""What the server answers over HTTP: BreastLab's routes in front of MONAI Label's, the stock job and model routes,
authentication, request limits and the checks on every input a client sends."""
