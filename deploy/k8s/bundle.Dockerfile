# selfheal with a bundle inside: every pod of the stack runs the same bundle (the healer and
# the scorers must agree on its id), and a new bundle is a new image, rolled out like code.
#   docker build -f deploy/Dockerfile -t selfheal:latest .
#   docker build -f deploy/k8s/bundle.Dockerfile -t registry.example.com/selfheal:bundle-mine bundles/mine
FROM selfheal:latest
COPY --chown=selfheal . /bundles/demo/
RUN selfheal bundle info /bundles/demo
