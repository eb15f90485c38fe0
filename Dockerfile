# The publisher (and its simulator) as an image: `docker build -t dataconnect-publisher .`
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY publisher ./publisher
COPY schemas ./schemas
RUN pip install --no-cache-dir . && useradd --system --uid 10001 publisher
USER publisher
EXPOSE 9464 8700
ENTRYPOINT ["dataconnect-publisher"]
CMD ["--help"]
