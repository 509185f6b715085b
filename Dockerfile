# The weir image: server and workers share it (docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md topics.yaml ./
COPY engine engine
COPY streams streams
COPY control control
RUN pip install --no-cache-dir -e .
ENV WEIR_HOME=/data
VOLUME /data
EXPOSE 8080
CMD ["weir", "serve"]
