# weir's image: the webhook and the analyzer (the chart picks one per container with its args).
# Node runs the TypeScript sources as they are (type stripping; ADR 1): no build stage for code.
FROM node:24.21.0-bookworm-slim AS dependencies
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:24.21.0-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=dependencies /app/node_modules ./node_modules
COPY package.json ./
COPY contract ./contract
COPY webhook ./webhook
COPY analyzer ./analyzer
# The analyzer keeps the webhook's certificate at run time (ADR 13) with the PKI in certs/.
COPY certs ./certs
USER 1000:1000
ENTRYPOINT ["node"]
CMD ["webhook/main.ts"]
