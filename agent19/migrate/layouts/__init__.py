"""Migration files: the layouts tools read and write (plain SQL, Prisma)."""
