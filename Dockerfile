FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain ./domain
COPY receiver ./receiver
COPY tasks ./tasks
COPY workers ./workers
RUN pip install --no-cache-dir . && useradd --create-home meterbridge
USER meterbridge
ENV METERBRIDGE_DATA_DIR=/home/meterbridge/data
EXPOSE 8000 5555
CMD ["meterbridge", "--help"]
