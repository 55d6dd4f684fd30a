/**
 * Runs a namespace's setup (migrate, the raw side's tables) on the connection it owns; a
 * setup that fails closes the connection, since no namespace will exist to dispose of it.
 */
export const setUpOrClose = async (
  connection: { close(): Promise<void> },
  setUp: () => Promise<unknown>,
): Promise<void> => {
  try {
    await setUp()
  } catch (error) {
    await connection.close().catch(() => undefined)
    throw error
  }
}
