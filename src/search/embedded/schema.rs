//! What the embedded index holds: the schema, the text analyzer, and how a message becomes
//! a tantivy document.
//!
//! Nothing is STORED (tantivy's document store stays empty). Each message is:
//! - `id`: the message id as 16 big-endian bytes, indexed (delete / replace by id) and a
//!   fast field (filters on `after_id` / `until_id`, ties broken newest first). Big-endian
//!   bytes of a UUID v7 sort as the message's time, like its canonical string.
//! - `channel`: the channel id's 16 bytes, indexed (search filter, channel deletion).
//! - `sender`: the sender id's 16 bytes, indexed and fast (for later filters).
//! - `created_at`: milliseconds since the epoch, fast.
//! - `text`: the message's words, indexed with their frequencies and a field norm (what
//!   BM25 needs) but with no positions and never stored, so the order of the words, and so
//!   the text, cannot be read back. The term dictionary does hold each distinct word.

use tantivy::TantivyDocument;
use tantivy::schema::{
    BytesOptions, FAST, Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
    TokenizerManager,
};

use crate::search::IndexDoc;

/// The analyzer's name in the index's tokenizer manager (and in its schema).
pub(crate) const ANALYZER: &str = "brightchat_words";

/// Words longer than this many bytes are not indexed (and so are ignored in a query too).
pub(crate) const MAX_WORD_BYTES: usize = 40;

/// The fields of the index, resolved once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fields {
    pub id: Field,
    pub channel: Field,
    pub sender: Field,
    pub created_at: Field,
    pub text: Field,
}

/// Field names, as the fast-field collectors want them.
pub(crate) const ID_FIELD: &str = "id";

pub(crate) fn build_schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let id = builder.add_bytes_field(ID_FIELD, BytesOptions::default().set_indexed().set_fast());
    let channel = builder.add_bytes_field("channel", BytesOptions::default().set_indexed());
    let sender =
        builder.add_bytes_field("sender", BytesOptions::default().set_indexed().set_fast());
    let created_at = builder.add_i64_field("created_at", FAST);
    let text_indexing = TextFieldIndexing::default()
        .set_tokenizer(ANALYZER)
        .set_index_option(IndexRecordOption::WithFreqs)
        .set_fieldnorms(true);
    let text = builder.add_text_field(
        "text",
        TextOptions::default().set_indexing_options(text_indexing),
    );
    let fields = Fields {
        id,
        channel,
        sender,
        created_at,
        text,
    };
    (builder.build(), fields)
}

/// Splits on anything not alphanumeric (Unicode-aware), drops over-long words, lowercases,
/// and folds accents to ASCII where there is a folding ("Café" matches "cafe"). No stemming
/// and no stop words: matching is exact per word, in any language.
pub(crate) fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_WORD_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

pub(crate) fn tokenizers() -> TokenizerManager {
    let manager = TokenizerManager::default();
    manager.register(ANALYZER, analyzer());
    manager
}

/// The distinct words of `text` as the index holds them, in their first order.
pub(crate) fn words(text: &str) -> Vec<String> {
    let mut analyzer = analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut words: Vec<String> = Vec::new();
    stream.process(&mut |token| {
        if !words.contains(&token.text) {
            words.push(token.text.clone());
        }
    });
    words
}

pub(crate) fn to_document(fields: &Fields, doc: &IndexDoc) -> TantivyDocument {
    let mut document = TantivyDocument::default();
    document.add_bytes(fields.id, doc.message_id.as_bytes());
    document.add_bytes(fields.channel, doc.channel_id.as_bytes());
    document.add_bytes(fields.sender, doc.sender_id.as_bytes());
    document.add_i64(fields.created_at, doc.created_at_ms);
    document.add_text(fields.text, &doc.text);
    document
}
