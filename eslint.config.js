// Lint: typescript-eslint's type-aware recommended rules plus size caps that keep functions readable.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.cluster/', 'coverage/', '.tap/', 'eslint.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-non-null-assertion': 'error',
      // fastify handlers and tap tests are idiomatically async without awaiting.
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'max-lines-per-function': ['error', { max: 80, skipBlankLines: true, skipComments: true }],
      // `??` and `?.` count as branches here, so the cap sits above the classic 10.
      complexity: ['error', 20],
      'max-depth': ['error', 4],
      // Prettier formats at 120 (.prettierrc.json); what it cannot break (long strings) is split by hand.
      'max-len': ['error', { code: 120, ignoreUrls: true }],
    },
  },
  {
    // Layers (docs/adr/0012-analyzer-layout.md): the webhook, the CLI and the contract never reach
    // into the analyzer; they share contract/ alone.
    files: ['webhook/**/*.ts', 'contract/**/*.ts', 'cli/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/analyzer/**', '../analyzer/*'],
              message: 'webhook/, cli/ and contract/ never import from analyzer/',
            },
          ],
        },
      ],
    },
  },
  {
    // contract/ owns every weir.dev/ key: nothing else spells one (issue 11).
    files: ['analyzer/**/*.ts', 'webhook/**/*.ts', 'cli/**/*.ts', 'demo/**/*.ts', 'certs/**/*.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: 'Literal[value=/^weir\\.dev\\//]',
          message: 'weir.dev/ keys live in contract/: import the constant',
        },
        {
          selector: 'TemplateElement[value.raw=/^weir\\.dev\\//]',
          message: 'weir.dev/ keys live in contract/: import the constant',
        },
      ],
    },
  },
  {
    // The analyzer loads no client-node code (ADR 22): its types are free, its generated clients cost ~75 MiB.
    files: ['analyzer/**/*.ts', 'contract/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: [
            {
              name: '@kubernetes/client-node',
              allowTypeImports: true,
              message: 'the analyzer speaks REST itself (analyzer/loop/rest.ts); import client-node types only',
            },
          ],
        },
      ],
    },
  },
  {
    // The analyzer's pure core decides from plain values: no adapter, no loop, no API client.
    files: ['analyzer/core/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [{ name: '@kubernetes/client-node', message: 'the pure core never talks to the API server' }],
          patterns: [
            { group: ['**/adapters/**', '../adapters/*'], message: 'the core sees adapters only through ports/' },
            { group: ['**/loop/**', '../loop/*'], message: 'the core never imports the loop' },
            { group: ['undici', 'node:*', 'fastify'], message: 'the pure core does no I/O' },
          ],
        },
      ],
    },
  },
  {
    // Ports are interfaces: they import nothing but contract/ types.
    files: ['analyzer/ports/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/adapters/**', '**/loop/**', '../adapters/*', '../loop/*'],
              message: 'ports import no implementation',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      'max-lines-per-function': 'off',
      complexity: ['error', 30],
      '@typescript-eslint/no-floating-promises': 'off',
    },
  },
);
